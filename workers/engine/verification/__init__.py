"""The verification gate: the tests an unlearned model must pass before the service makes a version
of it (../shared/METHODS.md, "Verification gate").

- ``policy``: the thresholds, their defaults and how far a request may loosen them (torch-free: the
  API validates requests with it);
- ``membership``: the sample-scope membership-inference test with its bootstrap bound (numpy);
- ``relearn``: the relearn probe;
- ``gate``: every test of a classifier or a language model, run on evaluation rows only;
- ``plan``: what method ``auto`` tries, in which order (torch-free).

Import the submodules; this package imports nothing so that the API can read the policy without torch.
"""
