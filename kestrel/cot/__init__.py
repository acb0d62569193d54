"""kestrel.cot"""
