"""kestrel.geo"""
