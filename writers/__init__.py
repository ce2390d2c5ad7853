"""Writers: converge Active Directory to the desired group states, one provisioning-log record per decision."""
