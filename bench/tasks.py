from carrot import task


@task
def noop(n=0):
    return None
