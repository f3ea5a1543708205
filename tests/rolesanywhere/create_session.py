"""CreateSession with iam-rolesanywhere-session, the independent client.

Usage: create_session.py HOST:PORT CA_BUNDLE CERT KEY [CHAIN]
with the ARNs in ROLESANYWHERE_{TRUST_ANCHOR,PROFILE,ROLE}_ARN. Prints the access key id
of the session (never the secret) and exits 0, or prints the error and exits 1.
"""

import os
import sys

from iam_rolesanywhere_session import IAMRolesAnywhereSession


def main() -> int:
    endpoint, ca_bundle, cert, key = sys.argv[1:5]
    chain = sys.argv[5] if len(sys.argv) > 5 else None
    session = IAMRolesAnywhereSession(
        trust_anchor_arn=os.environ["ROLESANYWHERE_TRUST_ANCHOR_ARN"],
        profile_arn=os.environ["ROLESANYWHERE_PROFILE_ARN"],
        role_arn=os.environ["ROLESANYWHERE_ROLE_ARN"],
        certificate=cert,
        private_key=key,
        certificate_chain=chain,
        region="us-east-1",
        endpoint=endpoint,
        verify=ca_bundle,
    )
    try:
        frozen = session.get_refreshable_credentials().get_frozen_credentials()
    except Exception as e:  # the test prints it: the reason a run failed
        print(f"error: {type(e).__name__}: {e}")
        return 1
    print(frozen.access_key)
    return 0


if __name__ == "__main__":
    sys.exit(main())
