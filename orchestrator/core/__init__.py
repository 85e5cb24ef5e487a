"""What every flow shares: settings, the tables and the database, the stage rules, the event
log, who may do what, secrets at rest and their masking, and the limits on user input."""
