"""What a Microsoft Graph v1.0 group carries: its property names, and which of them are not single values.

The configuration names group attributes as Graph does (scoping filters, mappings); these lists let
a load refuse a name no group has (`displayNam`) instead of it matching nothing for ever. Taken from
the group resource (and directoryObject's id, deletedDateTime) as msgraph-sdk 1.65's v1.0 model has
it, navigation properties (members, owners, …) left out.
"""

from __future__ import annotations

import re

# What ingest reads of every group (the groups delta $select), whatever the configuration; it adds
# the attributes the active configuration's filters and mappings reference (ingest/delta.py).
GROUP_SELECT = [
    "id",
    "displayName",
    "description",
    "securityEnabled",
    "mailEnabled",
    "mailNickname",
    "groupTypes",
    "onPremisesSyncEnabled",
    "members",
]

# Collections: Graph returns a JSON array.
MULTI_VALUED_GROUP_PROPERTIES = frozenset(
    {
        "assignedLabels",
        "assignedLicenses",
        "groupTypes",
        "infoCatalogs",
        "onPremisesProvisioningErrors",
        "proxyAddresses",
        "resourceBehaviorOptions",
        "resourceProvisioningOptions",
        "serviceProvisioningErrors",
    }
)
# Single complex values: Graph returns a JSON object.
COMPLEX_GROUP_PROPERTIES = frozenset(
    {"licenseProcessingState", "onPremisesExtensionAttributes", "onPremisesSyncBehavior"}
)

GROUP_PROPERTIES = frozenset(
    {
        "accessType",
        "allowExternalSenders",
        "autoSubscribeNewMembers",
        "classification",
        "createdDateTime",
        "deletedDateTime",
        "description",
        "displayName",
        "expirationDateTime",
        "hasMembersWithLicenseErrors",
        "hideFromAddressLists",
        "hideFromOutlookClients",
        "id",
        "isArchived",
        "isAssignableToRole",
        "isFavorite",
        "isManagementRestricted",
        "isSubscribedByMail",
        "mail",
        "mailEnabled",
        "mailNickname",
        "membershipRule",
        "membershipRuleProcessingState",
        "onPremisesDomainName",
        "onPremisesLastSyncDateTime",
        "onPremisesNetBiosName",
        "onPremisesSamAccountName",
        "onPremisesSecurityIdentifier",
        "onPremisesSyncEnabled",
        "organizationId",
        "preferredDataLocation",
        "preferredLanguage",
        "renewedDateTime",
        "securityEnabled",
        "securityIdentifier",
        "theme",
        "uniqueName",
        "unseenConversationsCount",
        "unseenCount",
        "unseenMessagesCount",
        "visibility",
        "welcomeMessageEnabled",
        *MULTI_VALUED_GROUP_PROPERTIES,
        *COMPLEX_GROUP_PROPERTIES,
    }
)

# Graph names a directory extension property extension_<appId without hyphens>_<name>, the appId in
# lower case as Graph returns it: a name spelt otherwise is absent from every group Graph sends.
_DIRECTORY_EXTENSION = re.compile(r"^extension_[0-9a-f]{32}_[A-Za-z0-9_]+$")


def is_directory_extension(name: str) -> bool:
    """Whether `name` is a directory extension property as Graph names it (extension_<32 hex appId>_<name>)."""
    return _DIRECTORY_EXTENSION.match(name) is not None
