#!/bin/sh
# As the official image: render /etc/nginx/templates/*.template into /etc/nginx/conf.d, replacing only the
# variables that are set.
set -eu
defined=$(env | cut -d= -f1 | sed 's/.*/${&}/' | tr '\n' ' ')
for template in /etc/nginx/templates/*.template; do
    [ -f "$template" ] || continue
    output="/etc/nginx/conf.d/$(basename "$template" .template)"
    envsubst "$defined" <"$template" >"$output"
    echo "$0: rendered $template to $output"
done
