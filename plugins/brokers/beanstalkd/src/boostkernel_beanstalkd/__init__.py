"""boostkernel-beanstalkd: the beanstalkd broker."""
