"""Values the contract (../shared/contract.md) fixes beyond the settings' defaults, for the tests that check them."""

from __future__ import annotations

# AWS_WEB_IDENTITY_AUDIENCE has no contract value ("required in that mode"): the deployment sets it to the Application
# ID URI of the collector's own Entra application (infra/hooks/entra-app.sh), never the shared api://AzureADTokenExchange.
CONTRACT_VALUES = {"COLLECTOR_SCHEDULE": "0 0 */6 * * *"}
