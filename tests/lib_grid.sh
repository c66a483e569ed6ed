# lib_grid.sh — sourced by the end-to-end scripts that write grid topologies.
# stages_json R LAYERS...: the topology's "stages" array, one entry per LAYERS
# (its "layers"), each with R replicas on 127.0.0.1 (R 0: a plain stage, no
# "replicas"), every process on its own port from $port on, which it advances.
# Prints '  "stages": [' through '\n  ]' (the caller closes the object).
stages_json() {
    local R=$1 k=0 r layers
    shift
    printf '  "stages": ['
    for layers in "$@"; do
        [ $k -gt 0 ] && printf ','
        if [ "$R" -eq 0 ]; then
            printf '\n    { "layers": "%s", "host": "127.0.0.1", "port": %d }' "$layers" $port
            port=$((port + 1))
        else
            printf '\n    { "layers": "%s", "replicas": [' "$layers"
            for ((r = 0; r < R; r++)); do
                [ $r -gt 0 ] && printf ', '
                printf '{ "host": "127.0.0.1", "port": %d }' $port
                port=$((port + 1))
            done
            printf '] }'
        fi
        k=$((k + 1))
    done
    printf '\n  ]'
}
