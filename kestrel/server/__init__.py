"""kestrel.server"""
