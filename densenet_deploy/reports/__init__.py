"""What dnx says about models and machines: the paper's figures and claims, info, the zoo listing, doctor, plots."""
