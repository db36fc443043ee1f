"""JupyterHub config for the loopback test: the deployment's config plus a test service.

The service's token (BNHUB_TEST_TOKEN) lets the test start servers, read their pids and issue
tokens for the test users, as an administrator would.
"""

import os
from pathlib import Path

c = get_config()  # noqa: F821  (injected by traitlets)

load_subconfig(  # noqa: F821
    str(Path(__file__).resolve().parents[2] / "deploy" / "jupyterhub" / "jupyterhub_config.py")
)

c.JupyterHub.services = [{"name": "bnhub-test", "api_token": os.environ["BNHUB_TEST_TOKEN"]}]
c.JupyterHub.load_roles = [
    {
        "name": "bnhub-test",
        "scopes": ["admin:users", "admin:servers", "admin:server_state", "tokens", "list:users"],
        "services": ["bnhub-test"],
    }
]
c.JupyterHub.log_level = "INFO"
