from cadenza_cli.main import app

app(prog_name="cadenza")
