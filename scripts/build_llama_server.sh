#!/usr/bin/env bash
# Build llama.cpp's C++ `llama-server` (OpenAI-compatible server: parallel slots,
# continuous batching, prompt cache) without GitHub access: the llama.cpp source
# is taken from the llama-cpp-python sdist on PyPI (it vendors llama.cpp).
#
# Usage: scripts/build_llama_server.sh [INSTALL_DIR]   (default ~/.cache/ga-llama-server)
# Env:   LLAMA_CPP_PYTHON_VERSION (default 0.3.36, same as the venv's binding),
#        PIP (default "python3 -m pip"), JOBS (default 2).
set -euo pipefail

DEST="${1:-$HOME/.cache/ga-llama-server}"
VERSION="${LLAMA_CPP_PYTHON_VERSION:-0.3.36}"
PIP="${PIP:-python3 -m pip}"
JOBS="${JOBS:-2}"
BIN="$DEST/llama-server"

if [[ -x "$BIN" ]]; then   # idempotent: nothing to do if already built
    echo "$BIN"
    exit 0
fi

WORK="$DEST/build-src"
mkdir -p "$WORK"

# 1. Fetch the sdist (source only, no deps) from PyPI and unpack it.
$PIP download --no-binary :all: --no-deps "llama-cpp-python==$VERSION" -d "$WORK"
tar -xzf "$WORK/llama_cpp_python-$VERSION.tar.gz" -C "$WORK"
SRC="$WORK/llama_cpp_python-$VERSION/vendor/llama.cpp"

# 2. Configure. Portable x86-64 flags: GGML_NATIVE=ON (-march=native) crashes on
#    this CPU, so list the ISA extensions explicitly. Static libs so the binary
#    is self-contained and can be moved to $DEST. The server's web UI is not
#    needed (API only) and would be downloaded from Hugging Face, so disable it.
#    OpenSSL (HTTPS model download) is not needed either. (LLAMA_CURL is
#    deprecated in this llama.cpp version and no longer used.)
cmake -S "$SRC" -B "$WORK/build" \
    -DCMAKE_BUILD_TYPE=Release \
    -DBUILD_SHARED_LIBS=OFF \
    -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON \
    -DGGML_F16C=ON -DGGML_BMI2=ON \
    -DLLAMA_BUILD_TOOLS=ON -DLLAMA_BUILD_SERVER=ON \
    -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF \
    -DLLAMA_BUILD_UI=OFF -DLLAMA_USE_PREBUILT_UI=OFF -DLLAMA_OPENSSL=OFF

# 3. Build only the server target (the server lives in tools/server).
cmake --build "$WORK/build" --target llama-server -j "$JOBS"

# 4. Install the binary and drop the (large) build tree.
install -m 755 "$WORK/build/bin/llama-server" "$BIN"
rm -rf "$WORK"
echo "$BIN"
