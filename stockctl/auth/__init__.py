"""Accounts and access: passwords and users, signed access tokens, and which address a
request comes from when proxies stand in front.
"""
