"""Checks that need no trust in the server, run here: a certificate's Ed25519 signature and an
exported audit chain re-walked against its signed heads.

They are the service's own offline verifiers (``unlearnd verify-certificate`` and
``verify-audit-export`` call them too), which need only ``cryptography`` and the standard library:
importing them loads no web framework, database driver or torch.
"""

from __future__ import annotations

from app.audit.offline import ExportVerification, verify_export_lines
from app.certificates.offline import VerificationResult, verify_certificate

__all__ = ["ExportVerification", "VerificationResult", "verify_certificate", "verify_export_lines"]
