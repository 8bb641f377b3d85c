*
xUINT8:	