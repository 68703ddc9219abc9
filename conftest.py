pytest_plugins = ["crm_lib.testing", "crm_lib.testing_logs"]
