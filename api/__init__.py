"""HTTP front door: Flask application factory, blueprints, streaming request parsing."""
