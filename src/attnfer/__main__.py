from attnfer.cli import app

app(prog_name="attnfer")
