"""Policies: the controls of 施行規則第6条 as data, and the checks that judge them."""
