"""`python -m service.client datasets|jobs|sweeps ...`: the client CLI without the server."""

from service.client.cli import app

app(prog_name="ridgeline")
