#!/usr/bin/env bash
# Build the `--features cuda` synth-city binary on a machine WITHOUT a CUDA install or GPU.
#
# What it is for: the GPU machines this project borrows have the NVIDIA driver, nvcc and
# PyTorch but no Rust toolchain and no network, so the CUDA binary is built here and carried
# there. This script
#   1. installs a CUDA toolkit from PyPI wheels into target/cuda-toolkit (a venv; target/ is
#      gitignored) if it is not there yet. Only the CUDA 13 wheels (nvidia-cuda-nvcc 13.x)
#      ship the nvcc compiler driver, cicc and cudafe++; the CUDA 12 wheels
#      (nvidia-cuda-nvcc-cu12) carry only ptxas and libnvvm, so CUDA 12 cannot be built
#      this way;
#   2. adds the unversioned .so links the linker needs (libcublas.so -> libcublas.so.13, ...)
#      and, because no PyPI wheel carries the driver link stub (lib64/stubs/libcuda.so of
#      the real toolkit), generates one: an empty libcuda.so (soname libcuda.so.1) exporting
#      every cu* entry point cudarc declares. It is used only at link time; at run time the
#      real driver's libcuda.so.1 is loaded;
#   3. runs `cargo build --release --features cuda` into target/cuda (its own target dir, so
#      target/release is not disturbed) and prints the binary's path.
#
# Usage:  ops/cuda-build.sh            # build target/cuda/release/synth-city
#         ops/cuda-build.sh --check    # `cargo check --features cuda` only (still runs nvcc
#                                      # on every candle kernel; links nothing)
# Environment (all optional):
#   CUDA_WHEELS_VERSION  CUDA minor series of the wheels, default 13.0 (13.x only). The
#                        driver on the GPU machine must be at least as new (13.0 needs R580+):
#                        candle JIT-loads its kernels as PTX, and PTX from nvcc 13.0 is ISA 9.0.
#   CUDA_COMPUTE_CAP     GPU arch for the kernels, default 90 (H100/H200: sm_90).
#   CUDA_BUILD_JOBS      cargo -j, default 1 (this box has 2 cores that benchmarks share).
#   PYTHON               python used to create the venv, default python3.
#
# On the GPU machine the binary needs, besides the driver, the CUDA 13 runtime libraries
# libcudart.so.13, libcublas.so.13, libcublasLt.so.13, libcurand.so.10 and libnvrtc.so.13 on
# the loader path (e.g. a cu13 PyTorch's site-packages/nvidia/cu13/lib, or /usr/local/cuda-13*/
# lib64): LD_LIBRARY_PATH=... target/cuda/release/synth-city ... --device cuda
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD

MODE=build
case "${1:-}" in
    "") ;;
    --check) MODE=check ;;
    -h | --help)
        sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'
        exit 0
        ;;
    *)
        echo "usage: $0 [--check]" >&2
        exit 2
        ;;
esac

CUDA_WHEELS_VERSION=${CUDA_WHEELS_VERSION:-13.0}
CUDA_MAJOR=${CUDA_WHEELS_VERSION%%.*}
if [ "$CUDA_MAJOR" != 13 ]; then
    echo "cuda-build: CUDA_WHEELS_VERSION=$CUDA_WHEELS_VERSION: only 13.x works (the CUDA 12" \
        "PyPI wheels have no nvcc compiler driver)" >&2
    exit 2
fi
# curand keeps its own numbering: 10.4.0.x is the CUDA 13.0 release.
case "$CUDA_WHEELS_VERSION" in
    13.0) CURAND_SPEC="nvidia-curand==10.4.0.*" ;;
    *) CURAND_SPEC="nvidia-curand" ;;
esac
JOBS=${CUDA_BUILD_JOBS:-1}
export CUDA_COMPUTE_CAP=${CUDA_COMPUTE_CAP:-90}

VENV=$ROOT/target/cuda-toolkit
STAMP=$VENV/.installed-$CUDA_WHEELS_VERSION

# 1. The toolkit.
if [ ! -f "$STAMP" ]; then
    echo "cuda-build: installing the CUDA $CUDA_WHEELS_VERSION wheels into $VENV" >&2
    rm -rf "$VENV"
    "${PYTHON:-python3}" -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check \
        "nvidia-cuda-nvcc==$CUDA_WHEELS_VERSION.*" \
        "nvidia-nvvm==$CUDA_WHEELS_VERSION.*" \
        "nvidia-cuda-crt==$CUDA_WHEELS_VERSION.*" \
        "nvidia-cuda-runtime==$CUDA_WHEELS_VERSION.*" \
        "nvidia-cuda-cccl==$CUDA_WHEELS_VERSION.*" \
        "nvidia-cuda-nvrtc==$CUDA_WHEELS_VERSION.*" \
        "nvidia-cublas==$CUDA_WHEELS_VERSION.*" \
        "$CURAND_SPEC"
    touch "$STAMP"
fi
SITE=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
CUDA_DIR=$SITE/nvidia/cu$CUDA_MAJOR
for f in bin/nvcc include/cuda.h nvvm/bin/cicc include/cccl/thrust/scan.h; do
    [ -e "$CUDA_DIR/$f" ] || {
        echo "cuda-build: $CUDA_DIR/$f missing; delete $VENV and rerun" >&2
        exit 1
    }
done

# 2. Link-time libraries: unversioned names for -lcublas etc., and the libcuda stub.
LIB=$CUDA_DIR/lib
for so in cudart cublas cublasLt curand nvrtc; do
    real=$(cd "$LIB" && ls lib$so.so.[0-9]* 2>/dev/null | grep -E "^lib$so\.so\.[0-9]+$" | head -1)
    [ -n "$real" ] || {
        echo "cuda-build: no lib$so.so.N in $LIB" >&2
        exit 1
    }
    ln -sfn "$real" "$LIB/lib$so.so"
done
STUB=$LIB/stubs/libcuda.so
if [ ! -f "$STUB" ]; then
    CUDARC_SYS=$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/cudarc-0.19.*/src/driver/sys/mod.rs 2>/dev/null | tail -1)
    if [ -z "$CUDARC_SYS" ]; then
        cargo fetch >/dev/null
        CUDARC_SYS=$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/cudarc-0.19.*/src/driver/sys/mod.rs | tail -1)
    fi
    mkdir -p "$LIB/stubs"
    grep -oE '^pub unsafe fn cu[A-Za-z0-9_]+' "$CUDARC_SYS" | awk '{print "void " $4 "(void) {}"}' |
        sort -u >"$LIB/stubs/libcuda-stub.c"
    cc -shared -fPIC -Wl,-soname,libcuda.so.1 -o "$STUB" "$LIB/stubs/libcuda-stub.c"
    echo "cuda-build: generated the link stub $STUB ($(wc -l <"$LIB/stubs/libcuda-stub.c") symbols)" >&2
fi

# 3. Build. bindgen_cuda (candle-kernels) looks for include/cuda.h under CUDA_PATH/CUDA_ROOT;
# cudarc takes its link search paths (lib, lib/stubs) and, via nvcc --version, the CUDA version.
export PATH=$CUDA_DIR/bin:$PATH
export CUDA_PATH=$CUDA_DIR CUDA_ROOT=$CUDA_DIR CUDA_HOME=$CUDA_DIR
export RAYON_NUM_THREADS=$JOBS # nvcc processes bindgen_cuda runs at once
export CARGO_TARGET_DIR=$ROOT/target/cuda
echo "cuda-build: $(nvcc --version | tail -2 | head -1); sm_$CUDA_COMPUTE_CAP; -j $JOBS" >&2

start=$SECONDS
if [ "$MODE" = check ]; then
    nice -n 19 cargo check --release --features cuda -j "$JOBS"
    echo "cuda-build: cargo check --features cuda passed in $((SECONDS - start))s" >&2
    exit 0
fi
nice -n 19 cargo build --release --features cuda -j "$JOBS"
echo "cuda-build: built in $((SECONDS - start))s" >&2
echo "$CARGO_TARGET_DIR/release/synth-city"
