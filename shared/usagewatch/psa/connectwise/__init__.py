"""ConnectWise PSA (Manage), the first implementation of the PSA adapter contract (docs/psa.md).

Modules: `connection` (the secret), `api` (transport: discovery, auth, paging, the PATCH), `mapping` (pure:
query text, payloads, exact numbers).
"""

from usagewatch.psa.connectwise.api import CLIENT_ID_REFUSED, KEYS_REFUSED, ConnectWiseClient
from usagewatch.psa.connectwise.connection import ConnectWiseConnection, parse_connection
from usagewatch.psa.connectwise.mapping import ACCEPT, API_VERSION, MAX_PAGE_SIZE, PSA

__all__ = [
    "ACCEPT",
    "API_VERSION",
    "CLIENT_ID_REFUSED",
    "KEYS_REFUSED",
    "MAX_PAGE_SIZE",
    "PSA",
    "ConnectWiseClient",
    "ConnectWiseConnection",
    "parse_connection",
]
