import os

pytest_plugins = ["crm_dev.testing", "crm_dev.testing_logs"]

# Gateways started by the suites serve their Prometheus listener on a free port, not on
# the fixed default (several gateways per session, several sessions per machine).
os.environ.setdefault("CRM_METRICS_PORT", "0")
