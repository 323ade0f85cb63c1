#!/usr/bin/env bash
# Runs the benchmarks behind starflow's speed and memory targets and prints
# them as the body of docs/benchmarks.md. Ratios matter more than absolute
# numbers: each table is measured in one run on one machine.
#
#   docs/bench.sh > /tmp/bench.txt
set -euo pipefail
cd "$(dirname "$0")/.."
echo "machine: $(nproc) vCPU, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(go version | cut -d' ' -f3-), $(uname -sr)"
echo "date:    $(date -u +%Y-%m-%dT%H:%MZ)"
echo
run() { echo "\$ go test $*"; go test "$@" 2>&1 | grep -E '^(Benchmark|ok|FAIL)' ; echo; }
run ./runtime -run '^$' -bench 'SyncStepVsFsync' -benchtime 30x -count 3
run ./runtime -run '^$' -bench 'Fsync|StepSync|StepAsync|StepExit' -benchtime 3s -count 2
run ./runtime -run '^$' -bench 'ConcurrentSync' -benchtime 20000x -count 2
run ./runtime -run '^$' -bench 'Replay10k' -benchtime 20x -count 3
run ./runtime -run '^$' -bench 'WaitingRuns' -benchtime 1x
run ./runtime -run '^$' -bench 'Guard' -benchtime 20x -count 4
run ./cmd/starflow -run '^$' -bench 'QuickstartPeakRSS' -benchtime 3x
run ./server -run '^$' -bench 'WaitingRuns' -benchtime 1x
run ./server -run '^$' -bench 'AnswerToResumed' -benchtime 100x -count 3
run ./builtins/http -run '^$' -bench 'CallOverhead' -benchtime 2s
run ./builtins/llm -run '^$' -bench 'RoutingOverhead|LoopbackCall|ConcurrentCalls|ConcurrentJournaledCalls' -benchtime 2s
run ./chaos -run '^$' -bench . -benchtime 1s
