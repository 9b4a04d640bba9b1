"""Job logic: the store and its Lua scripts, staging, the blob store, chunk processing, the reaper, webhooks.

Nothing here knows Celery or HTTP: the worker layer wires these into Celery tasks, the API into views.
"""
