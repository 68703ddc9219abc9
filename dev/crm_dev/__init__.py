"""Development package of the CRM workspace (not a runtime dependency of any service).

``devstack`` / ``devstack_runner`` (embedded servers, ``crm up``), ``testing`` /
``testing_logs`` (pytest plugins), ``cli`` (``crm up`` and ``crm tenant ...``). It may import
the services and the gateway; nothing in ``crm_lib``, a service or the gateway imports it.
"""
