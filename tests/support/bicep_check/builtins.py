"""What the Bicep compiler knows without any file: its functions (with how many arguments each takes), decorators,
type names, and the shapes of the objects its scope functions return.

The function table is taken from the compiler's source (Azure/bicep, src/Bicep.Core/Semantics/Namespaces/
SystemNamespaceType.cs and AzNamespaceType.cs, 2026-08): for each name, the fewest and the most arguments over all
its overloads (None: no upper bound). Functions only a .bicepparam file may call (readEnvironmentVariable,
externalInput, az.getSecret...) are left out, as the compiler hides them from a .bicep file.
"""

from __future__ import annotations

from tests.support.bicep_check.shapes import ANY, BOOL, INT, STRING, Arr, Obj, Shape

SYS_FUNCTIONS: dict[str, tuple[int, int | None]] = {
    "any": (1, 1), "array": (1, 1), "base64": (1, 1), "base64ToJson": (1, 1), "base64ToString": (1, 1),
    "bool": (1, 1), "buildUri": (1, 1), "cidrHost": (2, 2), "cidrSubnet": (3, 3), "concat": (1, None),
    "contains": (2, 2), "dataUri": (1, 1), "dataUriToString": (1, 1), "dateTimeAdd": (2, 3),
    "dateTimeFromEpoch": (0, 1), "dateTimeToEpoch": (0, 1), "distinct": (1, 1), "empty": (1, 1),
    "endsWith": (2, 2), "fail": (1, 1), "filter": (2, 2), "first": (1, 1), "flatten": (1, 1), "format": (1, None),
    "groupBy": (2, 3), "guid": (1, None), "indexOf": (2, 2), "int": (1, 1), "intersection": (2, None),
    "items": (1, 1), "join": (2, 2), "json": (1, 1), "last": (1, 1), "lastIndexOf": (2, 2), "length": (1, 1),
    "like": (2, 2), "loadDirectoryFileInfo": (1, 2), "loadFileAsBase64": (1, 1), "loadJsonContent": (1, 3),
    "loadTextContent": (1, 2), "loadYamlContent": (1, 3), "map": (2, 2), "mapValues": (2, 2), "max": (1, None),
    "min": (1, None), "nameof": (1, 1), "newGuid": (0, 0), "objectKeys": (1, 1), "padLeft": (2, 3),
    "parseCidr": (1, 1), "parseUri": (1, 1), "range": (2, 2), "reduce": (3, 3), "replace": (3, 3),
    "shallowMerge": (1, 1), "skip": (2, 2), "sort": (2, 2), "split": (2, 2), "startsWith": (2, 2),
    "string": (1, 1), "substring": (2, 3), "take": (2, 2), "toLower": (1, 1), "toObject": (2, 3),
    "toUpper": (1, 1), "trim": (1, 1), "union": (2, None), "uniqueString": (1, None), "uri": (2, 2),
    "uriComponent": (1, 1), "uriComponentToString": (1, 1), "utcNow": (0, 1),
}

AZ_FUNCTIONS: dict[str, tuple[int, int | None]] = {
    "deployer": (0, 0), "deployment": (0, 0), "environment": (0, 0), "extensionResourceId": (3, None),
    "managementGroup": (0, 1), "managementGroupResourceId": (2, None), "pickZones": (3, 5), "providers": (1, 2),
    "reference": (1, 3), "resourceGroup": (0, 2), "resourceId": (2, None), "roleDefinitions": (1, 1),
    "subscription": (0, 1), "subscriptionResourceId": (2, None), "tenant": (0, 0), "tenantResourceId": (2, None),
    "toLogicalZone": (3, 3), "toLogicalZones": (3, 3), "toPhysicalZone": (3, 3), "toPhysicalZones": (3, 3),
}

LIST_FUNCTION_ARGS = (2, 3)  # list*(resourceId, apiVersion[, functionValues]) at the top level
RESOURCE_LIST_METHOD_ARGS = (0, 2)  # resource.list*([apiVersion[, functionValues]])

# Only valid as a parameter's default value (BCP065).
PARAM_DEFAULT_ONLY = {"utcNow", "newGuid"}

DECORATORS = {
    "allowed", "batchSize", "description", "discriminator", "export", "maxLength", "maxValue", "metadata",
    "minLength", "minValue", "nullIfNotFound", "onlyIfNotExists", "retryOn", "sealed", "secure", "validate",
    "waitUntil",
}

# Type names a type expression can use besides the file's own `type` declarations.
TYPE_NAMES = {"string", "int", "bool", "object", "array", "any", "secureString", "secureObject", "resource",
              "resourceInput", "resourceOutput"}

STRING_FUNCTIONS = {
    "base64", "base64ToString", "buildUri", "cidrHost", "dataUri", "dataUriToString", "dateTimeAdd",
    "dateTimeFromEpoch", "extensionResourceId", "format", "guid", "join", "loadFileAsBase64", "loadTextContent",
    "managementGroupResourceId", "nameof", "newGuid", "padLeft", "replace", "resourceId", "string",
    "subscriptionResourceId", "substring", "tenantResourceId", "toLower", "toUpper", "trim", "uniqueString", "uri",
    "uriComponent", "uriComponentToString", "utcNow",
}
INT_FUNCTIONS = {"dateTimeToEpoch", "indexOf", "int", "lastIndexOf", "length"}
BOOL_FUNCTIONS = {"bool", "contains", "empty", "endsWith", "like", "startsWith"}


def _obj(type_name: str, /, **props: Shape) -> Obj:
    return Obj(type_name, props, open=False)


_TAGS = Obj("tags", {}, open=True)


def scope_function_shape(name: str, target_scope: str) -> Shape | None:
    """The object a scope function returns (from AzNamespaceType.cs), or None for other functions."""
    if name == "subscription":
        return _obj("subscription", id=STRING, subscriptionId=STRING, tenantId=STRING, displayName=STRING)
    if name == "resourceGroup":
        return _obj("resourceGroup", id=STRING, name=STRING, type=STRING, location=STRING, managedBy=STRING,
                    tags=_TAGS, properties=_obj("properties", provisioningState=STRING))
    if name == "tenant":
        return _obj("tenant", tenantId=STRING, country=STRING, countryCode=STRING, displayName=STRING)
    if name == "deployer":
        return _obj("deployer", objectId=STRING, tenantId=STRING, userPrincipalName=STRING)
    if name == "environment":
        return _obj(
            "environment",
            activeDirectoryDataLake=STRING,
            authentication=_obj("authenticationProperties", audiences=Arr(STRING), identityProvider=STRING,
                                loginEndpoint=STRING, tenant=STRING),
            batch=STRING, gallery=STRING, graph=STRING, graphAudience=STRING, media=STRING, name=STRING,
            portal=STRING, resourceManager=STRING, sqlManagement=STRING,
            suffixes=_obj("suffixesProperties", acrLoginServer=STRING, azureDatalakeAnalyticsCatalogAndJob=STRING,
                          azureDatalakeStoreFileSystem=STRING, azureFrontDoorEndpointSuffix=STRING,
                          keyvaultDns=STRING, sqlServerHostname=STRING, storage=STRING),
            vmImageAliasDoc=STRING,
        )
    if name == "deployment":
        props: dict[str, Shape] = {
            "name": STRING,
            "properties": _obj("properties", template=Obj("templateProperties", {"contentVersion": STRING}, open=True),
                               templateLink=_obj("templateLinkProperties", id=STRING, uri=STRING)),
        }
        if target_scope != "resourceGroup":
            props["location"] = STRING
        return Obj("deployment", props, open=False)
    if name == "managementGroup":
        return ANY
    return None


def simple_return_shape(name: str) -> Shape | None:
    if name in STRING_FUNCTIONS:
        return STRING
    if name in INT_FUNCTIONS:
        return INT
    if name in BOOL_FUNCTIONS:
        return BOOL
    if name in ("split",):
        return Arr(STRING)
    if name == "objectKeys":
        return Arr(STRING)
    if name == "range":
        return Arr(INT)
    return None
