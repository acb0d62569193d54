"""kestrel.ped"""
