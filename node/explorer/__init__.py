"""The explorer: a read-only web page for operators and auditors, served by the node at
GET /explorer/ (`node.explorer_api`). Plain HTML, CSS and ES modules in `static/`: no
build step, no framework. The page reads only the public client API, from the same origin.
"""

from pathlib import Path

STATIC_DIR = Path(__file__).resolve().parent / "static"
