"""bci_app.session.commands"""
