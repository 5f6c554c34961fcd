"""Collectives over torch.distributed (`gpucost profile --comm`): the ops and sizes (ops), the loop
every rank runs (bench, worker), the launcher (launch), the groups (topology) and the record (report)."""
