"""Values the contract (../shared/contract.md) fixes beyond the settings' defaults, for the tests that check them."""

from __future__ import annotations

CONTRACT_VALUES = {"COLLECTOR_SCHEDULE": "0 0 */6 * * *", "AWS_WEB_IDENTITY_AUDIENCE": "api://AzureADTokenExchange"}
