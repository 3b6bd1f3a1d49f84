# AccuLLM container image: CPU build on Debian 12 (bookworm). Three stages:
#   build    the project's own scripts/setup.sh installs the Debian packages, then only the
#            `accullm` binary is built (no tests);
#   runtime  debian:bookworm-slim + exactly the Debian packages that own the shared libraries
#            the binary links, plus OpenMPI's launcher (openmpi-bin: mpirun/orted), the binary
#            and the embedded model; non-root user 10001. Single-process (embedded) serving.
#   mpi      runtime + OpenSSH (client for mpirun on the leader, a non-root sshd on workers):
#            what the Helm chart's LeaderWorkerSet group runs (helm/accullm/README.md).
# The runtime package list is checked by tests/ops/docker_runtime_packages_test.py against
# `ldd build/cli/accullm` + `dpkg -S`; change both together. No CUDA in the build stage (the
# toolkit is not a Debian package), so this image serves on CPU.
#
#   docker build --target runtime -t accullm:cpu .   # embedded mode
#   docker build --target mpi -t accullm:mpi .       # MPI groups (default target)
#
# It could not be built on the development machine (no registry for base images): the
# package lists are tested, the image is not.

FROM debian:bookworm AS build
WORKDIR /src
COPY . .
RUN bash scripts/setup.sh --no-build \
 && cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release \
 && cmake --build build --target accullm \
 && strip build/cli/accullm

FROM debian:bookworm-slim AS runtime
# BEGIN runtime-packages
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      libabsl20220623 \
      libboost-json1.81.0 \
      libc6 \
      libevent-core-2.1-7 \
      libevent-pthreads-2.1-7 \
      libfmt9 \
      libgcc-s1 \
      libhwloc15 \
      libopenmpi3 \
      libprometheus-cpp-core1.0 \
      libspdlog1.10 \
      libstdc++6 \
      libudev1 \
      openmpi-bin \
      zlib1g \
 && rm -rf /var/lib/apt/lists/*
# END runtime-packages
RUN useradd --uid 10001 --user-group --no-create-home --home-dir /tmp --shell /bin/sh accullm
COPY --from=build /src/build/cli/accullm /usr/local/bin/accullm
COPY --from=build /src/models/tinystories-llama /opt/accullm/models/tinystories-llama
ENV ACCULLM_MODEL=/opt/accullm/models/tinystories-llama
USER 10001:10001
EXPOSE 8000
ENTRYPOINT ["/usr/local/bin/accullm"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8000"]

FROM runtime AS mpi
USER root
# BEGIN mpi-packages
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      openssh-client \
      openssh-server \
 && rm -rf /var/lib/apt/lists/* /etc/ssh/ssh_host_*
# END mpi-packages
USER 10001:10001
EXPOSE 2222
