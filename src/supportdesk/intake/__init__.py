"""Mail in: mailboxes, the SMTP gateway and IMAP polling, raw messages stored before they are
processed, and the processing that turns them into tickets and responses."""
