#!/usr/bin/env bash
# Stage costs of the Kafka buffer path in CPU microseconds per row event (pgbench-shaped stream).
# Usage: bench/kafka-path/run.sh [transactions] [mode: codec|kafka|all]
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
dotnet build "$here/KafkaPath.csproj" -c Release -o "$here/bin/out" --nologo -v q -clp:ErrorsOnly >&2
exec dotnet "$here/bin/out/KafkaPath.dll" "$@"
