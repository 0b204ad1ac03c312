"""Forms for the demo's HTML pages: the CSRF-protected name form and the upload form."""

from django import forms


class NameForm(forms.Form):
    name = forms.CharField(max_length=100)


class UploadForm(forms.Form):
    # Empty files are valid input for a digest: they hash like any other.
    file = forms.FileField(allow_empty_file=True)
