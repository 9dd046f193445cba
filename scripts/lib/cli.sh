# How to start the CLI that ./replicator built into a directory (artifacts/cli): the native
# executable, or, after the ReadyToRun or plain fallback build, its replicator.dll under dotnet
# (that build's apphost needs the runtime at a standard place, dotnet on PATH does not).
# cli_in DIR -> sets the array CLI
cli_in() { if [ -f "$1/replicator.dll" ]; then CLI=(dotnet "$1/replicator.dll"); else CLI=("$1/replicator"); fi; }
