"""Images: a language spec rendered as a Dockerfile whose hash is its tag
(``dockerfile``, pure), an image made present on one engine — bootstrapped, built,
pulled or copied (``ensure``) — and on every engine of a fleet (``depot``)."""
