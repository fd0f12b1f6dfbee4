#!/usr/bin/env bash
# Samples a running process's resident memory every 15 s until it ends: anonymous (what the process itself
# holds) and file-backed (pages of memory-mapped files, such as a dataset, which the system can drop), in kB.
# ru_maxrss, which `circuitgnn reproduce` records, counts both together.
#
#   bash benchmarks/memory_watch.sh PID > memory.log      # lines: HH:MM:SS RssAnon_kB RssFile_kB
#   sort -k2 -n memory.log | tail -1                       # the anonymous peak
set -u
pid=$1
while kill -0 "$pid" 2>/dev/null; do
    echo "$(date +%H:%M:%S) $(grep -E 'RssAnon|RssFile' "/proc/$pid/status" | awk '{print $2}' | tr '\n' ' ')"
    sleep 15
done
