"""The ceiling: a hello-world Flask app served by the very same gunicorn command line.

Its POST answers a JSON body of the same shape and size as a callback's 200, without parsing
the form or touching a database, so the difference to the service is what ingesting costs.
"""

from flask import Flask, jsonify

app = Flask(__name__)


@app.post("/callbacks/jsms")
def callback():
    """What the service answers for one stored report, for free."""
    return jsonify({"stored": 1, "duplicates": 0, "quarantined": 0})


@app.get("/hello")
def hello():
    """The query bench's floor: the smallest JSON answer the same gunicorn line can give."""
    return jsonify({"hello": "world"})


@app.get("/healthz")
def healthz():
    """The same probe the service has (the load script drains with it)."""
    return jsonify({"status": "ok"})
