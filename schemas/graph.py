"""What Microsoft Graph returns for a group: the names mappings and scoping filters may read."""

from __future__ import annotations

import re

# The properties of Graph's v1.0 group resource (relationships such as members and owners are
# not properties), plus objectId: the name Cloud Sync's mappings use for the group's id.
GROUP_PROPERTIES = frozenset(
    {
        "allowExternalSenders", "assignedLabels", "assignedLicenses", "autoSubscribeNewMembers",
        "classification", "createdDateTime", "deletedDateTime", "description", "displayName",
        "expirationDateTime", "groupTypes", "hasMembersWithLicenseErrors", "hideFromAddressLists",
        "hideFromOutlookClients", "id", "isArchived", "isAssignableToRole", "isManagementRestricted",
        "isSubscribedByMail", "licenseProcessingState", "mail", "mailEnabled", "mailNickname",
        "membershipRule", "membershipRuleProcessingState", "onPremisesDomainName",
        "onPremisesLastSyncDateTime", "onPremisesNetBiosName", "onPremisesProvisioningErrors",
        "onPremisesSamAccountName", "onPremisesSecurityIdentifier", "onPremisesSyncEnabled",
        "preferredDataLocation", "preferredLanguage", "proxyAddresses", "renewedDateTime",
        "resourceBehaviorOptions", "resourceProvisioningOptions", "securityEnabled",
        "securityIdentifier", "serviceProvisioningErrors", "theme", "uniqueName", "unseenCount",
        "visibility",
        "objectId",
    }
)  # fmt: skip

# extension_<the owning app's appId without dashes>_<name>: how Graph names a directory extension.
_DIRECTORY_EXTENSION = re.compile(r"^extension_[0-9a-fA-F]{32}_[A-Za-z0-9_]+$")


def is_directory_extension(name: str) -> bool:
    """True when name is a directory extension property (extension_<32 hex appId>_<name>)."""
    return _DIRECTORY_EXTENSION.match(name) is not None
