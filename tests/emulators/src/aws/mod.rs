//! Fake AWS endpoints: ECR, ECR Public, IMDSv2, container credentials, with faults.
