"""The v1alpha1 API: the InferenceFleet models (spec and status), conditions, the CRD."""
