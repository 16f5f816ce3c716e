"""Optimizer.set_lr / set_lr_scheduler examples (paddle docs), with Adamax."""
from _compare import main


def example(paddle, Adamax):
    linear = paddle.nn.Linear(10, 10)
    adamax = Adamax(0.1, parameters=linear.parameters())
    lines = []
    for lr in [0.2, 0.3, 0.4, 0.5, 0.6]:  # set learning rate manually by python float value
        adamax.set_lr(lr)
        lines.append("current lr is {}".format(adamax.get_lr()))
    scheduler = paddle.optimizer.lr.MultiStepDecay(learning_rate=0.5, milestones=[2, 4, 6],
                                                   gamma=0.8)
    adamax.set_lr_scheduler(scheduler)
    lines.append("current lr is {}".format(adamax.get_lr()))
    scheduler = paddle.optimizer.lr.StepDecay(learning_rate=0.1, step_size=5, gamma=0.6)
    adamax.set_lr_scheduler(scheduler)
    lines.append("current lr is {}".format(adamax.get_lr()))
    return lines


if __name__ == "__main__":
    main(example)
