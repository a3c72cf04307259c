"""bci_app.training"""
