#!/usr/bin/env bash
# Installs what the tests need (clang-19, llvm-19, bpftool, libbpf-dev,
# gcc-multilib, libpcap0.8, lcov, iproute2, iptables, nftables, conntrack, ethtool,
# iputils-ping, python3, curl) when missing, then runs the whole test suite.
# Kernel differential tests need root and the bpf() syscall; without them they
# skip with a printed reason.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v clang-19 >/dev/null 2>&1 || need+=(clang-19)
command -v llvm-objdump-19 >/dev/null 2>&1 || need+=(llvm-19)
command -v bpftool >/dev/null 2>&1 || need+=(bpftool)
[ -e /usr/include/bpf/bpf_helpers.h ] || need+=(libbpf-dev)
# clang -target bpf is no x86_64 target: glibc's headers then want gnu/stubs-32.h
# (gcc-multilib); asm/types.h alone (linux-libc-dev) is not enough
[ -e /usr/include/x86_64-linux-gnu/gnu/stubs-32.h ] && [ -e /usr/include/x86_64-linux-gnu/asm/types.h ] \
  || [ "$(uname -m)" != x86_64 ] || need+=(gcc-multilib)
# --filter loads libpcap at run time; --coverage's output is checked with genhtml
ldconfig -p 2>/dev/null | grep -q 'libpcap\.so' || need+=(libpcap0.8)
command -v genhtml >/dev/null 2>&1 || need+=(lcov)
# namespaces, tc lines, netfilter and live-mode tests against the kernel
command -v ip >/dev/null 2>&1 && command -v tc >/dev/null 2>&1 || need+=(iproute2)
command -v iptables >/dev/null 2>&1 || need+=(iptables)
command -v conntrack >/dev/null 2>&1 || need+=(conntrack)
command -v nft >/dev/null 2>&1 || need+=(nftables)
command -v ethtool >/dev/null 2>&1 || need+=(ethtool)
command -v ping >/dev/null 2>&1 || need+=(iputils-ping)
command -v python3 >/dev/null 2>&1 || need+=(python3)
command -v curl >/dev/null 2>&1 || need+=(curl)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    echo "installing: ${need[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
  else
    echo "missing ${need[*]} and not root: tests that need them will skip"
  fi
fi

# bpffs for the tests that pin objects through bpftool (libbpf cross-checks)
if [ "$(id -u)" = 0 ] && ! grep -q ' /sys/fs/bpf bpf ' /proc/mounts; then
  mount -t bpf bpf /sys/fs/bpf 2>/dev/null || echo "could not mount bpffs: bpftool cross-checks will skip"
fi

export SKIFF_CONFORMANCE_DIR="${SKIFF_CONFORMANCE_DIR:-$(pwd)/../shared/conformance}"
cargo test --workspace --release "$@"
