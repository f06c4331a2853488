"""The entry point: `gunicorn wsgi:app`, `flask --app wsgi jsms …`."""

from app import create_app

app = create_app()
