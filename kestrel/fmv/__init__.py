"""kestrel.fmv"""
