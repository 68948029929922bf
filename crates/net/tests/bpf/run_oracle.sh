#!/bin/sh
# Runs the helper oracle programs in the real kernel (BPF_PROG_TEST_RUN via bpftool)
# and prints res[] and the output frame. Needs root, clang-19, bpftool.
# usage: run_oracle.sh <obj> <prog name> <type xdp|tc> <packet hex>
set -e
obj=$1; name=$2; type=$3; hex=$4
d=$(mktemp -d)
pin=/sys/fs/bpf/skiffnet_$name
maps=/sys/fs/bpf/skiffnet_maps_$name
rm -rf $pin $maps
mkdir -p $maps
echo "$hex" | xxd -r -p > $d/pkt.bin
bpftool prog loadall $obj /sys/fs/bpf/skiffnet_all_$name type $type pinmaps $maps >/dev/null
bpftool prog run pinned /sys/fs/bpf/skiffnet_all_$name/$name data_in $d/pkt.bin data_out $d/out.bin
bpftool map dump pinned $maps/res -j | python3 -c '
import json,sys
for e in json.load(sys.stdin):
    k=e["key"]; v=e["value"]
    v=int.from_bytes(bytes(int(x,16) for x in v),"little") if isinstance(v,list) else v
    k=int.from_bytes(bytes(int(x,16) for x in k),"little") if isinstance(k,list) else k
    print(k, v, hex(v & 0xffffffffffffffff))' | awk '{ if ($2 != 0) print }'
echo "out: $(xxd -p $d/out.bin | tr -d '\n')"
rm -rf /sys/fs/bpf/skiffnet_all_$name $maps $d
