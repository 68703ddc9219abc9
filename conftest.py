pytest_plugins = ["crm_lib.testing"]
