"""The local inference engine: one owner thread per loaded model, bounded queues, keep-alive and a
memory budget (engine.py), over whatever inference library implements `backend.Backend`. It knows
nothing of providers or HTTP: the local provider types (`aigw.local`) put it behind the provider
seam, and the gateway owns the one engine every local provider shares."""
