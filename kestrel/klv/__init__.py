"""kestrel.klv"""
